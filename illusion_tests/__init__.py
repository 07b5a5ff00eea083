"""The benchmark-illusion suite: run with ``pytest --pyargs illusion_tests`` (options: ``--illusion-*``)."""
