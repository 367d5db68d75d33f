"""`python -m jobservice.cli.jobd`, the same as the `jobd` console script."""

from jobservice.cli.jobd import main

main()
