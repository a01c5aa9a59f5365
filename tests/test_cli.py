"""The command line: every verb is reachable, and a verb imports only its own module."""
import subprocess
import sys
from importlib import import_module

import pytest

from harness.cli import VERBS, build_parser, main, named_verb
from harness.core.paths import REPO


def test_top_level_help_lists_every_verb_with_its_modules_help(capsys):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(['--help'])
    assert exit_.value.code == 0
    out = ' '.join(capsys.readouterr().out.split())   # argparse wraps lines
    for name, module in VERBS.items():
        assert name in out and ' '.join(import_module(module).HELP.split())[:40] in out


@pytest.mark.parametrize('verb', list(VERBS))
def test_each_named_verb_gets_its_full_parser(verb, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(['-v', verb, '--help'])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith(f'usage: python -m harness {verb} ')


def test_the_verb_is_the_first_word_that_is_no_option():
    assert named_verb(['-v', 'status', '--runs', 'plan']) == 'status'
    assert named_verb(['--help']) is None and named_verb(['nosuch', 'status']) is None


def test_status_imports_no_criteria_and_no_torch(tmp_path):
    # status is what people poll while a study runs: it must not pay torch's import
    code = ('import sys; from harness.cli import main; '
            f'assert main(["status", "--runs", {str(tmp_path)!r}]) == 0; print(sorted(m for m in sys.modules '
            'if m.split(".")[0] in ("torch", "influencerformer", "scipy", "matplotlib")))')
    out = subprocess.run([sys.executable, '-c', code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == '[]'


def test_flags_no_verb_declares_are_refused_and_status_takes_backend_flags_only_with_a_spec(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main(['compare', '--runs', str(tmp_path), '--epochs', '8'])
    assert stop.value.code == 2 and 'unrecognized arguments: --epochs 8' in capsys.readouterr().err
    assert main(['status', '--runs', str(tmp_path), '--epochs', '8']) == 2
    assert '--epochs: not a status option; backend flags (--epochs, --cache, ...) are read only with --spec' in (
        capsys.readouterr().err)
