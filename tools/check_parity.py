#!/usr/bin/env python
"""Check that our backbones reproduce the official implementations on parity fixtures.

    python tools/check_parity.py tests/data/parity/*.pt

For each fixture: rebuild the official weights by the fixture's rule, convert them with the project's converter,
build the backbone at the official variant, run the fixture's input and compare every output with the tolerance
``1e-4 * max|ref| + 1e-5``. One line per output, one summary line; exit status 1 on any mismatch.
"""
import argparse
import sys

import _bootstrap  # noqa: F401
import torch

from mmvit_backbones.testing.parity import run_parity


# a decorator, not torch.set_grad_enabled(False): main() also runs inside other programs (the tests), whose
# later training must find autograd on
@torch.no_grad()
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('fixtures', nargs='+', help='fixture .pt files')
    args = parser.parse_args()
    counts = {'ok': 0, 'MISMATCH': 0, 'skipped': 0}
    failed_files = []
    for path in args.fixtures:
        fixture = torch.load(path, map_location='cpu', weights_only=True)
        print(f"{path}: {fixture['arch']} {fixture['variant']} input {fixture['input_hw'][0]}x{fixture['input_hw'][1]}")
        try:
            results, _ = run_parity(fixture)
        except Exception as err:  # report and continue with the other fixtures
            print(f'  ERROR    {type(err).__name__}: {err}')
            failed_files.append(path)
            counts['MISMATCH'] += 1
            continue
        for result in results:
            print(result.line())
            counts[result.status] += 1
        if any(r.status == 'MISMATCH' for r in results):
            failed_files.append(path)
    print(f"parity: {counts['ok']} outputs match, {counts['MISMATCH']} mismatch, {counts['skipped']} skipped "
          f"over {len(args.fixtures)} fixture(s)" + (f"; failing: {', '.join(failed_files)}" if failed_files else ''))
    return 1 if failed_files else 0


if __name__ == '__main__':
    sys.exit(main())
