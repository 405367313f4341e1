"""masd's benchmark and fault tests, a distribution of their own beside masd (not in its wheel).

The benchmark (``scripts/bench``, ``masd bench``) measures masd end to end against Kannel; its modules
are split by concern: ``rows`` (what is measured), ``procs`` (processes, ports, tools), ``measure``
(CPU, memory, percentiles), ``smsc`` (the SMSC peers), ``wrk`` (load generation), ``masd_setup`` and
``masd_rows`` (masd under test), ``kannel`` and ``dlr_sink`` (Kannel under test), ``sockload`` (the
socket load generator), ``report`` (docs/benchmarks.md) and ``cli`` (the command). ``chaos``,
``chaos_nodes`` (``scripts/chaos``) and ``storm`` (``scripts/storm.py``) kill and throttle a running
masd and check that nothing is lost.
"""
