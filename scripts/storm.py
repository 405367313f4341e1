"""The throttle storm (docs/reliability.md): ``python scripts/storm.py --minutes 10``, options as in
``--help``. The storm itself is masd_bench.storm (scripts/benchmark), installed into .venv by
scripts/_env.sh."""

from masd_bench.storm import main

if __name__ == "__main__":
    main()
