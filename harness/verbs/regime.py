"""``python -m harness regime``: how a prepared dataset's rooms look to the metric, beside S3DIS's documented figures."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from harness.core.io import atomic_write, check_out_file, result_line
from harness.data.regime import regime

HELP = 'instances per room, class mix, sizes and what AP counts, of a prepared dataset (markdown or JSON)'

# S3DIS's figures that a source documents (the Stanford3dDataset_v1.2_Aligned_Version archive's
# layout, as mmdetection3d and OneFormer3D read it); None: not documented in a source checked here.
S3DIS = {'rooms': '272 (Area 5: 68)', 'classes': '13, all instance classes (OneFormer3D evaluates every one)',
         'instances_per_room': None, 'points_per_room': None, 'class_mix': None, 'counted': None}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the regime verb."""
    parser.add_argument('data', type=Path, help='prepared data root (points/, instance_mask/, semantic_mask/)')
    parser.add_argument('--areas', type=int, nargs='+', default=[5], help='areas to describe (default: the test area)')
    parser.add_argument('--out', type=Path, default=None, help='write the report here (.md or .json)')
    parser.add_argument('--force', action='store_true', help='replace an existing --out')


def run(args: argparse.Namespace) -> int:
    """Compute, print the markdown, optionally write it."""
    if args.out is not None:
        check_out_file(args.out, args.force)
    areas = list(dict.fromkeys(args.areas))   # `--areas 5 5` describes Area_5 once, in the title too
    stats = regime(args.data, areas)
    text = markdown(stats, args.data, areas)
    print(text)
    if args.out is not None:
        atomic_write(args.out, json.dumps(stats, indent=1) + '\n' if args.out.suffix.lower() == '.json' else text,
                     overwrite=args.force)
    print(result_line('regime', 'ok', rooms=stats['rooms'], counted=stats['counted']['total'],
                      max_gt_influence_ap50=stats['max_gt_influence_ap50'], out=str(args.out) if args.out else None))
    return 0


def markdown(stats: dict, data: Path, areas: list[int]) -> str:
    """The report: this dataset beside S3DIS where a source documents the figure."""
    def known(key: str) -> str:
        return S3DIS[key] or 'not documented in a source checked here'
    ipr, ppr = stats['instances_per_room'], stats['points_per_room']
    rows = [('rooms', str(stats['rooms']), known('rooms')),
            ('instances per room (mean, min-max)', f"{ipr['mean']:.1f} ({ipr['min']}-{ipr['max']})",
             known('instances_per_room')),
            ('points per room (mean, min-max)', f"{ppr['mean']:,.0f} ({ppr['min']:,}-{ppr['max']:,})",
             known('points_per_room')),
            ('instances AP counts (>= 100 points)', str(stats['counted']['total']), known('counted')),
            ('most one GT moves the class-mean AP50', f"{stats['max_gt_influence_ap50']} points", '–'),
            ('points on ceiling / floor / walls', f"{stats['planar_point_fraction']:.0%}", '–'),
            ('largest / smallest instance (points)', f"{stats['size_ratio']:.0f}", '–')]
    lines = [f'# Regime of {data} (areas {", ".join(map(str, areas))})', '',
             '| | this data | S3DIS |', '|---|---|---|'] + [f'| {a} | {b} | {c} |' for a, b, c in rows]
    lines += ['', '| class | share of instances | counted by AP | share counted |', '|---|---|---|---|']
    for name, share in stats['class_mix'].items():
        lines.append(f"| {name} | {share:.1%} | {stats['counted'][name]} | {stats['ap_counted'][name]:.0%} |")
    return '\n'.join(lines) + '\n'
