"""The test suite, laid out like the source: tests/<package>/test_<module>.py."""
