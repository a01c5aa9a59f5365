"""git_state: what makes a checkout dirty in a run record (the harness's own outputs do not)."""
import subprocess
from pathlib import Path

from harness.core.env import OUTPUT_DIRS, git_state


def git(root, *args):
    subprocess.run(['git', '-C', str(root), '-c', 'user.name=t', '-c', 'user.email=t@t', *args],
                   check=True, capture_output=True)


def test_run_records_in_results_do_not_make_the_tree_dirty(tmp_path):
    (tmp_path / 'harness' / 'core').mkdir(parents=True)
    (tmp_path / 'harness' / 'core' / 'env.py').write_text('x = 1\n')
    git(tmp_path, 'init', '-q')
    git(tmp_path, 'add', '.')
    git(tmp_path, 'commit', '-qm', 'init')
    here = tmp_path / 'harness' / 'core'   # called with the module's folder, as env() does
    assert git_state(here, OUTPUT_DIRS) == {'sha': git_state(here)['sha'], 'dirty': False}
    (tmp_path / 'results' / 'exp' / 'runs' / 'r1').mkdir(parents=True)
    (tmp_path / 'results' / 'exp' / 'runs' / 'r1' / 'run.json').write_text('{}')
    assert git_state(here, OUTPUT_DIRS)['dirty'] is False
    git(tmp_path, 'add', '.')
    git(tmp_path, 'commit', '-qm', 'a committed record')
    (tmp_path / 'results' / 'exp' / 'runs' / 'r1' / 'run.json').write_text('{"status": "finished"}')
    assert git_state(here, OUTPUT_DIRS)['dirty'] is False
    assert git_state(here)['dirty'] is True          # without the exclusion a re-written record would count
    (tmp_path / 'harness' / 'new_module.py').write_text('y = 2\n')   # untracked code counts
    assert git_state(here, OUTPUT_DIRS)['dirty'] is True
    (tmp_path / 'harness' / 'new_module.py').unlink()
    (tmp_path / 'harness' / 'core' / 'env.py').write_text('x = 2\n')  # so does a modified file
    assert git_state(here, OUTPUT_DIRS)['dirty'] is True


def test_outside_git_there_is_no_state(tmp_path):
    assert git_state(tmp_path, OUTPUT_DIRS) == {'sha': None, 'dirty': None}


def test_outputs_of_a_command_run_from_a_subfolder_do_not_make_the_tree_dirty(tmp_path):
    """Run from docs/: its default results/ and work_dirs/ land there, untracked; the data root anywhere."""
    (tmp_path / 'harness').mkdir()
    (tmp_path / 'harness' / 'env.py').write_text('x = 1\n')
    git(tmp_path, 'init', '-q')
    git(tmp_path, 'add', '.')
    git(tmp_path, 'commit', '-qm', 'init')
    for sub in ('docs/results/runs/r1', 'docs/work_dirs/r1', 'docs/mydata/points'):
        (tmp_path / sub).mkdir(parents=True)
        (tmp_path / sub / 'f').write_text('1')
    here = tmp_path / 'harness'
    assert git_state(here, OUTPUT_DIRS)['dirty'] is True          # docs/mydata is nobody's output here
    assert git_state(here, OUTPUT_DIRS, (tmp_path / 'docs' / 'mydata',))['dirty'] is False
    (tmp_path / 'docs' / 'notes.md').write_text('new')            # anything else still counts
    assert git_state(here, OUTPUT_DIRS, (tmp_path / 'docs' / 'mydata',))['dirty'] is True


def test_without_git_the_state_is_unknown_not_clean(tmp_path, monkeypatch):
    monkeypatch.setenv('PATH', str(tmp_path))   # no git on PATH
    here = Path(__file__).parent
    assert git_state(here, OUTPUT_DIRS) == {'sha': None, 'dirty': None}
