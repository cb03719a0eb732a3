"""Load tests of the stream workers on a real Kafka (issue #18 part 4; docs/benchmarks.md, docs/capacity.md).

    python -m load_tests capacity                          # one worker's capacity on a backlog, and a bare consumer
    python -m load_tests soak --minutes 20 --fraction 0.7  # the bounded soak (the documented 20-minute run)
    python -m load_tests overload --factor 2               # 2x capacity, then a low rate: no crash, no loss, recovery
    python -m load_tests short                             # the short versions the test suite runs (tests/load/)

- :mod:`load_tests.generator`: a simulated market day (``surveil.sim``), cut once into the feed's binary frames
  (``surveil.feed.encode_binary_frames``, the feed's partitioning and progress markers) and produced to the
  feed topics at a target rate in events/s (a schedule of phases), the day repeated with its event times moved
  by whole days for as long as the run lasts;
- :mod:`load_tests.monitor`: every second, the worker group's consumer lag (end offsets minus committed
  offsets, in records and in events), the worker process's RSS (``/proc/<pid>/status``) and whether it runs;
- :mod:`load_tests.runs`: a worker process (``python -m surveil.stream.app``) under a schedule; afterwards its
  final alerts against ``surveil replay`` of the same days, and the alert latency of every raised alert;
- :mod:`load_tests.plots`: lag and memory over time (PNG).

The helpers of ``bench/worker_bench.py`` (bare consumer, in-process capacity run, percentiles, topic set-up)
are imported from there, not copied (:mod:`load_tests._bench`).
"""
