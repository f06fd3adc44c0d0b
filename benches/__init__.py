"""ctrstore's benchmark suite. Every figure is a ratio to an anchor measured in the same run,
because absolute times on these shared machines move from run to run.

Run ``python -m benches --help``.
"""
