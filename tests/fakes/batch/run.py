"""Entry point of the fake batch commands: ``run.py <command> [arguments...]``.

The bin/ shims exec this with FAKE_BATCH_PYTHON (default python3); it imports the fakes as
the package ``fakes.batch`` from the tests directory and runs the command's main().
"""
import importlib
import os
import sys

SYSTEMS = {"qsub": "pbs", "qstat": "pbs", "qselect": "pbs", "qdel": "pbs", "qsig": "pbs",
           "bsub": "lsf", "bjobs": "lsf", "bkill": "lsf",
           "condor_submit": "htcondor", "condor_q": "htcondor", "condor_rm": "htcondor",
           "job": "windowshpc"}

if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    command = sys.argv[1]
    module = importlib.import_module("fakes.batch." + SYSTEMS[command])
    sys.exit(module.main(command, sys.argv[2:]))
