from ctrstore.cli import main

main()
