from collateral.cli import main

main()
