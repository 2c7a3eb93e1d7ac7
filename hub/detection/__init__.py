"""Risk detection: standard set points now; health checks and anomaly scoring come with the detection issue."""

from hub.detection.thresholds import ThresholdDetector

__all__ = ["ThresholdDetector"]
