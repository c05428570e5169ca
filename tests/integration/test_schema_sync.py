"""src/schema/keptn-crds.json must be what tools/gen_keptn_schema.py makes of the CRDs.

The Rust checker embeds that JSON, so a CRD bump in shared/crds/keptn without
regenerating it would silently check against old schemas.
"""

import pathlib
import subprocess
import sys

from conftest import REPO, SHARED

CRDS = SHARED / "crds" / "keptn"
# Evaluation and metrics CRDs, vendored from upstream (the shared directory lacks them).
VENDORED = REPO / "tests" / "crds" / "keptn-evaluations"
GENERATOR = REPO / "tools" / "gen_keptn_schema.py"
OUTPUT = REPO / "src" / "schema" / "keptn-crds.json"


def run_check(output):
    return subprocess.run(
        [sys.executable, str(GENERATOR), "--check", str(CRDS), str(VENDORED), str(output)],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )


def test_crds_present():
    assert CRDS.is_dir(), f"missing {CRDS}: shared/ must sit beside the repository"


def test_embedded_schema_is_up_to_date():
    result = run_check(OUTPUT)
    assert result.returncode == 0, result.stderr


def test_check_mode_reports_a_stale_file(tmp_path):
    stale = tmp_path / "keptn-crds.json"
    stale.write_text(OUTPUT.read_text().replace('"secureParameters"', '"secureParameterz"', 1))
    result = run_check(stale)
    assert result.returncode == 1
    assert "stale" in result.stderr and "secureParameterz" in result.stderr
