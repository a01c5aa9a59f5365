"""``python -m harness``: pin the CPU kernels (before anything imports torch), then run the verb."""
import os

from harness.core import cpu

os.environ['HARNESS_CPU_PIN'] = cpu.pin()   # read back into every run record (harness.core.cpu.state)

from harness.cli import main  # noqa: E402 - torch must load after the pin

raise SystemExit(main())
