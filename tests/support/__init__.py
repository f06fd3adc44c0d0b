"""What tests, benches and the demo share: real registries (``registry``), images built on
this machine (``images``, ``crafted``), a fault-injecting registry (``hostile``) and the CLI run
as a process (``cli``). No tests live here (see tests/README.md)."""
