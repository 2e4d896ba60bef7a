from chaos.cli import app
from rig.procs import stoppable_by_sigint

stoppable_by_sigint()
app(prog_name="drill chaos")
