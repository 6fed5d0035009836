from collateral.cli import run

run()
