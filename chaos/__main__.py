from chaos.cli import app

app(prog_name="drill chaos")
