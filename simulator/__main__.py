"""``python -m simulator``: the simulator's commands without the drill harness."""

from simulator.cli import app

app(prog_name="simulator")
