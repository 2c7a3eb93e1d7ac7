"""Detection on the hub: the standards' rules (``rules``), the anomaly detector, and the columns they take."""

from hub.detection.observations import Observations

__all__ = ["Observations"]
