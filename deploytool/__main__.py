from deploytool.cli import main

main()
