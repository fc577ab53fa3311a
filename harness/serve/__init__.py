"""Serving scenarios under MLPerf LoadGen: a system under test that drives any backend's session,
LoadGen's runs and logs, the server QPS search, and the scenario cells of a suite run."""
