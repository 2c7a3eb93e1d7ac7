"""systemd's service notifications (sd_notify) for the hub and the edge agent: READY, WATCHDOG, STOPPING.

A package of its own, standard library only, because both ``anju-hub`` and ``anju-edge`` need it and the edge may
not import the hub (a Pi installs ``.[edge]`` alone). See ``_notify`` for the protocol and the watchdog's rules.
"""

from systemd_notify._notify import notify, serving, watchdog_forever, watchdog_interval_s

__all__ = ["notify", "serving", "watchdog_forever", "watchdog_interval_s"]
