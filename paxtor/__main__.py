"""`python -m paxtor ...`: the command line."""
import sys


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    sys.stderr.write("usage: python -m paxtor {node,demo} ...\n")
    return 2


if __name__ == "__main__":
    sys.exit(main())
