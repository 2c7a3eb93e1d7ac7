"""The edge always stops: a stop that hangs ends the process with thread stacks and a distinct exit code."""

import subprocess
import sys

from edge.cli import EXIT_STOP_TIMEOUT

HANG = """
import time
import edge.cli as cli
cli.STOP_DEADLINE_S = 0.3
cli._arm_stop_deadline()
time.sleep(30)  # a shutdown stuck on a network thread
"""


def test_a_hung_stop_ends_with_stacks_and_exit_70() -> None:
    result = subprocess.run([sys.executable, "-c", HANG], capture_output=True, text=True, timeout=20, check=False)
    assert result.returncode == EXIT_STOP_TIMEOUT == 70
    assert "stop took longer than" in result.stderr
    assert "Thread" in result.stderr and "time.sleep" not in result.stdout
