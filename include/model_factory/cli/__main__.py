from model_factory.cli.main import run

run()
