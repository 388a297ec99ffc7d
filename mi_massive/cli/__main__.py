from mi_massive.cli import main

main()
