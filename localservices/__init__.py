"""Local stand-ins for what a run talks to in the cloud, for the tests and the benchmarks:
the Azurite blob emulator on 127.0.0.1 (:mod:`localservices.azurite`) and free loopback
ports for the Spark masters and web UIs they start (:mod:`localservices.ports`)."""
