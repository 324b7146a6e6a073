"""Progress lines: phases carry the shared clock, long silent steps get heartbeats."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from pathlib import Path

from ec2fleet import progress

REPO = Path(__file__).resolve().parent.parent


def test_stream_copies_output_and_says_which_task_is_still_running(capsys):
    out = io.StringIO()
    script = "print('TASK [common : Install packages] ***', flush=True); import time; time.sleep(2.6); print('done')"
    code = progress.stream([sys.executable, "-c", script], interval=1, out=out)
    assert code == 0
    assert out.getvalue().splitlines() == ["TASK [common : Install packages] ***", "done"]
    beats = [line for line in capsys.readouterr().err.splitlines() if "still in" in line]
    assert len(beats) >= 2, beats
    assert all(re.fullmatch(r"\[\d+:\d\d\] still in TASK \[common : Install packages\] \(\d+s\)", b) for b in beats)


def test_stream_returns_the_exit_code_and_is_quiet_when_output_flows(capsys):
    out = io.StringIO()
    code = progress.stream([sys.executable, "-c", "import sys; print('x'); sys.exit(3)"], interval=5, out=out)
    assert code == 3 and out.getvalue() == "x\n"
    assert "still" not in capsys.readouterr().err


def test_heartbeat_beats_until_the_block_ends(capsys):
    import time
    with progress.heartbeat("building", interval=0.3):
        time.sleep(1.0)
    beats = [line for line in capsys.readouterr().err.splitlines() if "building: still running" in line]
    assert 2 <= len(beats) <= 4, beats


def test_shell_heartbeat_says_a_long_step_is_alive_and_keeps_its_status():
    script = (f". {REPO}/tools/lib/progress.sh; EC2FLEET_HEARTBEAT=1; "
              "with_heartbeat 'slow step' sh -c 'sleep 3; exit 7'; echo rc=$?")
    proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30)
    assert proc.stdout.strip() == "rc=7"
    beats = [line for line in proc.stderr.splitlines() if "slow step: still running" in line]
    assert len(beats) >= 2, proc.stderr
    assert all(re.fullmatch(r"\[\d+:\d\d\] slow step: still running \(\d+s\)", b) for b in beats)
