"""status: a run's progress from its live log, and Slurm submissions, read as they are on disk."""
import json

from harness.execution.status import progress, submitted


def test_progress_reads_a_log_whose_last_line_is_still_being_written(tmp_path):
    log = tmp_path / 'work' / '20260101_000000' / 'vis_data' / 'scalars.json'
    log.parent.mkdir(parents=True)
    log.write_text('{"loss": 1.0, "time": 0.5, "step": 1}\n{"loss": 0.9, "time": 0.7, "step": 2}\n'
                   '{"lr": 0.0001, "loss": 0.9')   # training appends; status may read mid-line
    assert progress({'work_dir': str(tmp_path / 'work')}) == (2, 0.6)


def test_submission_entries_without_a_run_id_are_skipped(tmp_path):
    folder = tmp_path / '.submissions' / 'x-1'
    folder.mkdir(parents=True)
    (folder / 'submission.json').write_text(json.dumps({'experiment': 'x', 'runs': [
        {'run_id': 'x__hungarian__s0', 'job_id': '3_0'}, {'job_id': '3_1'}, 'x__hungarian__s2']}))
    other = tmp_path / '.submissions' / 'x-2'
    other.mkdir()
    (other / 'submission.json').write_text(json.dumps({'experiment': 'x', 'runs': {'x__hungarian__s3': 1}}))
    assert list(submitted(tmp_path)) == ['x__hungarian__s0']
    assert submitted(tmp_path)['x__hungarian__s0']['experiment'] == 'x'


def test_status_without_a_spec_names_a_runs_folder_that_does_not_exist(tmp_path, capsys):
    from harness.cli import main
    assert main(['status', '--runs', str(tmp_path / 'typo')]) == 2
    assert f'{tmp_path / "typo"}: no such runs folder' in capsys.readouterr().err
