"""Experiment specs (``baselines/<experiment>.yaml``) as one typed, frozen :class:`Spec`.

A spec names the experiment, its backend, arms, seeds, data and (optionally)
threads, ablations, Slurm resources and a container. :func:`load_spec` reads
the YAML, checks every key and builds the Spec once; everything past the
loader reads attributes. The backend's own keys (the native ``config:``,
upstream's ``upstream:`` / ``schedule:`` / ...) become the backend's own
typed part (:attr:`Spec.part`), parsed by the backend class named in
``backend:``. Every default of the common part lives in the dataclasses
below, with the reason. Every problem is an error naming the file and the
key, raised before any data is generated or anything trains.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from harness.core import schema as sc
from harness.core import yamlfile
from harness.core.errors import HarnessError
from harness.core.schema import check_keys, did_you_mean
from harness.study.arms import BASELINE, CRITERIA_FILE, check_block, load_criteria
from harness.study.axes import Ablations, parse_ablations

# Experiment and arm names become folder names: no separators, no '..'.
NAME = re.compile(r'[A-Za-z0-9][A-Za-z0-9_.+-]*')


@dataclass(frozen=True)
class SynthSpec:
    """How ``synth`` generates the spec's data when ``data.root`` holds none (cached afterwards).

    Attributes:
        rooms_per_area: one count for every area, or six (areas 1..6).
        seed: same seed, same rooms.
        points_per_room: a fixed count per room; points_per_m2: a density instead (None: 5k-50k at random).
    """

    rooms_per_area: int | tuple[int, ...]
    seed: int
    points_per_room: int | None = None
    points_per_m2: float | None = None


@dataclass(frozen=True)
class DataSpec:
    """The prepared data the runs train and test on.

    Attributes:
        root: prepared S3DIS-layout folder (``--data`` overrides it).
        train_areas: areas trained on (upstream: 1, 2, 3, 4, 6).
        test_area: the area evaluated (upstream: 5, also its validation set).
        num_points: points sampled per training room; None: all (upstream samples 180000).
        synth: generate ``root`` with synth when it holds no data; None: it must exist.
    """

    root: Path
    train_areas: tuple[int, ...]
    test_area: int
    num_points: int | None = None
    synth: SynthSpec | None = None

    def as_config(self, root: Path) -> dict[str, Any]:
        """The ``data`` entry of a native run config: keys as the spec gave them, ``root`` the one used."""
        out: dict[str, Any] = {'root': str(root), 'train_areas': list(self.train_areas), 'test_area': self.test_area}
        if self.num_points is not None:
            out['num_points'] = self.num_points
        return out


@dataclass(frozen=True)
class SlurmResources:
    """What each ``--executor slurm`` job asks for; the spec's ``slurm:`` block, then flags, over these.

    Attributes:
        time_min: 24 h, a common cluster limit; a longer run is requeued and resumes.
        gpus_per_job: 1 (upstream's published setting is one GPU).
        cpus_per_task / mem_gb: data loading workers and point clouds of ~1M points.
        array_parallelism: how many runs of the matrix train at once.
    """

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    time_min: int = 1440
    gpus_per_job: int = 1
    cpus_per_task: int = 8
    mem_gb: int = 64
    constraint: str | None = None
    array_parallelism: int = 32

    def with_flags(self, flags: Mapping[str, Any]) -> 'SlurmResources':
        """These resources with the flags that were given (None: not given), each checked as the
        spec's ``slurm:`` block is (:data:`SLURM`).

        Raises:
            HarnessError: ``--slurm-<name>: <value> <problem>; fix the flag``.
        """
        given = {k: v for k, v in flags.items() if v is not None}
        for key, value in given.items():
            flag = f'--slurm-{key.replace("_", "-")}'
            rule = SLURM.get(f'{key}?')
            if rule is None:
                raise HarnessError(f'{flag}: not a Slurm resource; use one of '
                                   f'{sorted("--slurm-" + k[:-1].replace("_", "-") for k in SLURM)}')
            problem = rule(value)
            if problem:
                raise HarnessError(f'{flag}: {value!r} {problem}; fix the flag')
        return dataclasses.replace(self, **given)


@dataclass(frozen=True)
class Question:
    """``question:``: a study's decision, fixed before its results (one-sided non-inferiority per arm).

    Each arm is compared with the baseline on ``metric`` over paired seeds: it is
    non-inferior when the one-sided 1 - alpha lower bound of the mean difference
    lies above -margin (``harness.reporting.stats.noninferiority``).

    Attributes:
        margin: the largest loss that still counts as "matches", in AP points (e.g. 3.0).
        metric: ap50 (upstream's headline class-mean AP50), ap25, ap75 or ap.
        alpha: one-sided level: 0.05, the usual level of a non-inferiority test.
        power: the power ``plan`` sizes the seeds for, at a true difference of 0: 0.8, the usual.
        sd: SD of the per-seed difference in AP points when known before the runs (a pilot's);
            None: ``plan`` estimates it from the finished runs it is shown.
        baseline: the arm every other is compared with (the harness's baseline).
    """

    margin: float
    metric: str = 'ap50'
    alpha: float = 0.05
    power: float = 0.8
    sd: float | None = None
    baseline: str = BASELINE

    def as_record(self) -> dict:
        """The question as every run record of the study carries it (compare reads it there)."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Spec:
    """One experiment spec, checked.

    Attributes:
        path: the YAML file it was read from (error messages name it; Slurm jobs read a copy).
        experiment: the experiment's name (run ids and folders start with it).
        backend: the backend's name (``harness.backends.BACKENDS``).
        arms: arms of ``baselines/criteria.yaml``; the baseline among them.
        seeds: master seeds; every arm runs every seed.
        data: see :class:`DataSpec`.
        part: the backend's own part (its ``parse_spec`` builds it; e.g. the native model config).
        description: one line for humans.
        threads: torch threads per run; None: torch's default (one thread makes CPU runs bitwise
            reproducible on one machine).
        ablations: see :class:`Ablations`; None: the main runs only.
        slurm: see :class:`SlurmResources`.
        container: ``apptainer:/path/image.sif`` for Slurm jobs; None: the login node's Python.
        question: see :class:`Question`; None: compare reports intervals without a decision.
    """

    path: Path
    experiment: str
    backend: str
    arms: tuple[str, ...]
    seeds: tuple[int, ...]
    data: DataSpec
    part: Any
    description: str = ''
    threads: int | None = None
    ablations: Ablations | None = None
    slurm: SlurmResources = field(default_factory=SlurmResources)
    container: str | None = None
    question: Question | None = None


COMMON_REQUIRED = {'experiment', 'backend', 'arms', 'seeds', 'data'}
COMMON_OPTIONAL = {'description', 'threads', 'ablations', 'slurm', 'container', 'question'}
# Points per room (sampled for training, or generated by synth). The S3DIS paper (Armeni et al., CVPR 2016)
# counts over 215M points in 271 rooms, under 1M a room on average; upstream samples 180,000 per room
# (its S3DIS config's point sampling). 10**7 is ten times the average room and 55 times upstream's sample; far past
# it a typo allocates terabytes (10**12 points: a 7 TiB MemoryError inside training, each run failed).
ROOM_POINTS = sc.int_in(1, 10**7, 'S3DIS rooms hold under 1M points on average; upstream samples 180,000')
DATA = {'root': sc.text, 'train_areas': sc.list_of(sc.area, 1, 5), 'test_area': sc.area,
        'num_points?': sc.optional(ROOM_POINTS),
        'synth?': {'rooms_per_area': lambda x: sc.positive_int(x) and sc.list_of(sc.positive_int, 6, 6)(x),
                   'points_per_room?': ROOM_POINTS, 'points_per_m2?': sc.positive, 'seed': sc.non_negative_int}}
QUESTION = {'margin': sc.positive, 'metric?': sc.one_of('ap50', 'ap25', 'ap75', 'ap'),
            'alpha?': lambda x: sc.fraction(x) or (None if 0 < x < 0.5 else 'must be in (0, 0.5)'),
            'power?': lambda x: sc.fraction(x) or (None if 0.5 <= x < 1 else 'must be in [0.5, 1)'),
            'sd?': sc.optional(sc.positive), 'baseline?': sc.one_of(BASELINE)}
SLURM = {'partition?': sc.optional(sc.text), 'account?': sc.optional(sc.text), 'qos?': sc.optional(sc.text),
         'time_min?': sc.positive_int, 'gpus_per_job?': sc.non_negative_int, 'cpus_per_task?': sc.positive_int,
         'mem_gb?': sc.positive_int, 'constraint?': sc.optional(sc.text), 'array_parallelism?': sc.positive_int}

#: backend name -> its spec parser: (raw mapping, path) -> the backend's typed part
PartParser = Callable[[dict, Path], Any]
#: the top-level keys each backend adds: backend name -> (required, optional)
BackendKeys = Mapping[str, tuple[frozenset, frozenset]]


def load_spec(path: Path, parsers: Mapping[str, PartParser], keys: BackendKeys) -> Spec:
    """Read a spec and build it, common part and backend part.

    Args:
        path: the YAML file.
        parsers: backend name -> its part parser (``Backend.parse_spec``).
        keys: backend name -> the top-level keys it adds (required, optional).

    Raises:
        HarnessError: unreadable YAML, unknown or missing keys, bad names,
            seeds or ablations; the message names the file and the key.
    """
    path = Path(path)
    raw = read_yaml(path)
    if raw.get('backend') not in parsers:
        raise HarnessError(f'{path}: backend {raw.get("backend")!r}; an experiment spec is a mapping with keys '
                           f'{sorted(COMMON_REQUIRED)} and backend one of {sorted(parsers)}')
    required, optional = keys[raw['backend']]
    check_keys(str(path), raw, COMMON_REQUIRED | set(required), COMMON_OPTIONAL | set(optional))
    _check_names(path, raw)
    _check_seeds(path, raw['seeds'])
    ablations = parse_ablations(path, raw)   # first: a backend's parser may read its checked ablations: block
    return Spec(path=path, experiment=raw['experiment'], backend=raw['backend'], arms=tuple(raw['arms']),
                seeds=tuple(raw['seeds']), data=_data(path, raw['data']),
                part=parsers[raw['backend']](raw, path), description=str(raw.get('description') or ''),
                threads=_threads(path, raw.get('threads')), ablations=ablations,
                slurm=_slurm(path, raw.get('slurm')), container=_container(path, raw.get('container')),
                question=_question(path, raw.get('question')))


def read_yaml(path: Path) -> dict:
    """A spec file's mapping, read strictly (:func:`harness.core.yamlfile.read_yaml`)."""
    raw = yamlfile.read_yaml(path, 'experiment spec', 'fix the file')
    if not isinstance(raw, dict):
        raise HarnessError(f'{path}: an experiment spec is a mapping with keys {sorted(COMMON_REQUIRED)}, '
                           f'got {type(raw).__name__}')
    return raw


def _check_names(path: Path, spec: dict) -> None:
    """experiment and arms: safe folder names; arms known; the baseline among them."""
    names = [spec['experiment']] + list(spec['arms'] if isinstance(spec['arms'], list) else [None])
    for name in names:
        if not isinstance(name, str) or not NAME.fullmatch(name) or '..' in name:
            raise HarnessError(f'{path}: name {name!r} is not a safe folder name (letters, digits, . _ + -, '
                               'no / and no ..); rename it')
    criteria = load_criteria()
    for arm in spec['arms']:
        if arm not in criteria:
            raise HarnessError(f'{path}: arms: {arm!r} is not in baselines/criteria.yaml'
                               f'{did_you_mean(arm, set(criteria))}')
    for arm in spec['arms']:
        check_block(f'{CRITERIA_FILE}: {arm}', criteria[arm])
    if BASELINE not in spec['arms']:
        raise HarnessError(f'{path}: arms must include {BASELINE} (every arm is compared with it)')
    if len(set(spec['arms'])) != len(spec['arms']):
        raise HarnessError(f'{path}: arms lists an arm twice: {spec["arms"]}')


# numpy's and mmengine's seeding take 32-bit seeds: a larger one fails inside training
MAX_SEED = 2**32 - 1


def _check_seeds(path: Path, seeds: Any) -> None:
    if (not isinstance(seeds, list) or not seeds or len(set(seeds)) != len(seeds)
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)):
        raise HarnessError(f'{path}: seeds must be a list of distinct non-negative integers, got {seeds!r}')
    if max(seeds) > MAX_SEED:
        raise HarnessError(f'{path}: seeds: {max(seeds)} is above 2**32 - 1 (numpy and mmengine seed with 32 '
                           'bits); use smaller seeds')


def _data(path: Path, block: Any) -> DataSpec:
    sc.validate(block, DATA, f'{path}: data')
    if block['test_area'] in block['train_areas']:
        raise HarnessError(f'{path}: data.test_area {block["test_area"]} is also a training area; '
                           'remove it from data.train_areas')
    synth = None
    if block.get('synth') is not None:
        raw = dict(block['synth'])
        if isinstance(raw['rooms_per_area'], list):
            raw['rooms_per_area'] = tuple(raw['rooms_per_area'])
        if 'points_per_room' in raw and 'points_per_m2' in raw:
            raise HarnessError(f'{path}: data.synth: give points_per_room or points_per_m2, not both')
        synth = SynthSpec(**raw)
    return DataSpec(root=Path(block['root']), train_areas=tuple(block['train_areas']), test_area=block['test_area'],
                    num_points=block.get('num_points'), synth=synth)


def _threads(path: Path, threads: Any) -> int | None:
    if threads is not None and sc.THREADS(threads):
        raise HarnessError(f'{path}: threads: {threads!r} {sc.THREADS(threads)}; fix the value')
    return threads or None


def _slurm(path: Path, block: Any) -> SlurmResources:
    if block is None:
        return SlurmResources()
    sc.validate(block, SLURM, f'{path}: slurm')
    return SlurmResources(**block)


def _question(path: Path, block: Any) -> Question | None:
    if block is None:
        return None
    sc.validate(block, QUESTION, f'{path}: question')
    return Question(**block)


def _container(path: Path, value: Any) -> str | None:
    if value is not None and not str(value).startswith('apptainer:'):
        raise HarnessError(f'{path}: container: {value!r}; use apptainer:/path/to/image.sif')
    return value
