from nurture.cli import main

main()
