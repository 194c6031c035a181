"""`python -m ledger`: the same command line as `moltis-ledger`."""

from ledger.cli import main

if __name__ == "__main__":
    main()
