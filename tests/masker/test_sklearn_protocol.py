"""The maskers without scikit-learn, and the same scikit-learn estimators once it is imported.

A one-shot job (a CLI call, a SLURM array task) imports, constructs, fits and transforms without
importing scikit-learn (1.4-2.2 s of imports); whoever imports ``sklearn.base`` then finds
``NiftiMapsMasker`` exactly as if it inherited ``(TransformerMixin, BaseEstimator)``; before that,
``SklearnProtocol``'s methods behave as ``BaseEstimator``'s (compared here method by method on the
same instances).
"""

from __future__ import annotations

import json
import pickle
import re
import subprocess
import sys

import pytest
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted as sklearn_check_is_fitted

from daskmasker import MultiNiftiMapsMasker, NiftiMapsMasker
from daskmasker.masker import sklearn_protocol
from daskmasker.masker.sklearn_protocol import SklearnProtocol

from helpers import make_data, write_maps_and_mask


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("protocol")
    paths = write_maps_and_mask(root)
    paths["run"] = str(root / "run.nii.gz")
    make_data(paths.pop("maps_img"), n_scans=12).to_filename(paths["run"])
    return paths


def _run(code: str) -> dict:
    """What ``code`` prints as JSON on its last line, run in a fresh interpreter."""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    return json.loads(out.splitlines()[-1])


ONE_SHOT_JOB = """
import json, sys
import daskmasker
masker = daskmasker.NiftiMapsMasker({maps!r}, mask_img={mask!r}, t_r=2.0, standardize=None)
loaded = {{"construct": "sklearn" in sys.modules}}
signals = masker.fit({run!r}).transform({run!r})
multi = daskmasker.MultiNiftiMapsMasker({maps!r}, standardize=None).fit_transform([{run!r}])
loaded["fit_transform"] = "sklearn" in sys.modules
loaded["shapes"] = [signals.shape, multi[0].shape]
{then}
loaded["then"] = "sklearn" in sys.modules
print(json.dumps(loaded))
"""


def test_a_one_shot_job_imports_no_sklearn(files):
    """Import, construct, fit and transform (single and multi) leave scikit-learn unimported
    (on main, before SklearnProtocol, ``construct`` was already True); printing the masker, a
    scikit-learn feature, imports it (negative control: the probe sees scikit-learn)."""
    code = ONE_SHOT_JOB.format(**files, then="repr(masker)")
    loaded = _run(code)
    assert loaded == {
        "construct": False,
        "fit_transform": False,
        "shapes": [[12, 6], [12, 6]],
        "then": True,
    }


def test_the_cli_without_report_imports_no_sklearn(files, tmp_path):
    """``daskmasker extract --no-report`` imports no scikit-learn (the default report draws with
    nilearn, whose import imports it)."""
    out = tmp_path / "out.zarr"
    code = (
        "import json, sys\nfrom daskmasker.cli import main\n"
        f"rc = main(['extract', '--maps', {files['maps']!r}, '--out', {str(out)!r}, '--t-r', '2', "
        f"'--no-report', '--no-progress', '-q', {files['run']!r}])\n"
        "print(json.dumps([rc, 'sklearn' in sys.modules]))"
    )
    assert _run(code) == [0, False]
    assert out.is_dir()


LATE_SKLEARN = """
import json, sys
import daskmasker
from daskmasker import MultiNiftiMapsMasker, NiftiMapsMasker
masker = NiftiMapsMasker("maps.nii.gz", t_r=2.0)
before = [k.__name__ for k in NiftiMapsMasker.__mro__]

class Mine(NiftiMapsMasker):  # a user's subclass, defined before scikit-learn is imported
    pass

import sklearn.base
classes = (NiftiMapsMasker, MultiNiftiMapsMasker, Mine)
print(json.dumps({
    "before": before,
    "isinstance": isinstance(masker, sklearn.base.BaseEstimator),
    "mro": {c.__name__: [k.__name__ for k in c.__mro__] for c in classes},
    "attributes": {c.__name__: sorted(set(dir(c)) - {"__slotnames__"}) for c in classes},
    "wrap_keys": {c.__name__: sorted(c._sklearn_auto_wrap_output_keys) for c in classes},
    "hooks": [type(f).__name__ for f in sys.meta_path if type(f).__name__ == "_SklearnBaseHook"],
}))
"""


def test_importing_sklearn_later_makes_the_same_classes():
    """Classes built before ``import sklearn.base`` (ours and a user's subclass) end up as they
    are when scikit-learn comes first, as here: same MRO, same attributes (scikit-learn's
    ``set_{method}_request`` descriptors, ``set_output`` keys), and the hook is gone."""

    class Mine(NiftiMapsMasker):
        pass

    late = _run(LATE_SKLEARN)
    assert late["before"] == ["NiftiMapsMasker", "SklearnProtocol", "object"]
    assert late["isinstance"]
    assert late["hooks"] == []
    for cls in (NiftiMapsMasker, MultiNiftiMapsMasker, Mine):
        name = cls.__name__
        assert late["mro"][name] == [k.__name__ for k in cls.__mro__]
        # (copyreg caches __slotnames__ on a class once one of its instances is pickled)
        assert late["attributes"][name] == sorted(set(dir(cls)) - {"__slotnames__"})
        assert late["wrap_keys"][name] == sorted(cls._sklearn_auto_wrap_output_keys)
    assert NiftiMapsMasker.__bases__ == (TransformerMixin, BaseEstimator)
    assert SklearnProtocol not in NiftiMapsMasker.__mro__
    assert "set_transform_request" in dir(NiftiMapsMasker)  # sklearn's hooks replayed
    assert Mine._sklearn_auto_wrap_output_keys == {"transform"}  # sklearn's default keywords
    assert MultiNiftiMapsMasker._sklearn_auto_wrap_output_keys == set()


class _Nested:
    """A parameter that is itself an estimator (has get_params/set_params), scikit-learn-free."""

    def __init__(self, alpha=1, beta=2):
        self.alpha, self.beta = alpha, beta

    def get_params(self, deep=True):
        return {"alpha": self.alpha, "beta": self.beta}

    def set_params(self, **params):
        for key, value in params.items():
            setattr(self, key, value)
        return self


def _pair(**params):
    return NiftiMapsMasker("maps.nii.gz", **params), NiftiMapsMasker("maps.nii.gz", **params)


@pytest.mark.parametrize("deep", [True, False])
def test_get_params_is_sklearns(deep):
    masker = NiftiMapsMasker("maps.nii.gz", memory=_Nested(3), t_r=2.0)
    ours = SklearnProtocol.get_params(masker, deep=deep)
    assert ours == BaseEstimator.get_params(masker, deep=deep)
    assert ("memory__alpha" in ours) is deep
    assert SklearnProtocol._get_param_names.__func__(NiftiMapsMasker) == (
        BaseEstimator._get_param_names.__func__(NiftiMapsMasker)
    )


def test_set_params_is_sklearns_nested_keys_and_errors():
    params = {"t_r": 1.5, "memory__beta": 7, "memory__alpha": 0, "standardize": "psc"}
    ours, theirs = _pair(memory=_Nested())
    assert SklearnProtocol.set_params(ours, **params) is ours
    BaseEstimator.set_params(theirs, **params)
    assert vars(ours.memory) == vars(theirs.memory) == {"alpha": 0, "beta": 7}
    assert SklearnProtocol.get_params(ours, deep=True) == BaseEstimator.get_params(theirs)
    # unknown names, unknown prefixes, and a nested key on a parameter with no set_params
    for bad, error in (
        ({"t_rr": 2.0}, ValueError),
        ({"nope__alpha": 1}, ValueError),
        ({"memory_level__x": 1}, AttributeError),
    ):
        with pytest.raises(error) as expected:
            BaseEstimator.set_params(theirs, **bad)
        with pytest.raises(error) as got:
            SklearnProtocol.set_params(ours, **bad)
        assert str(got.value) == str(expected.value)
        if error is ValueError:
            assert "Valid parameters are: ['allow_overlap'," in str(got.value)


def test_varargs_constructor_is_refused_as_sklearn_does():
    class Varargs(SklearnProtocol):
        def __init__(self, *args):
            self.args = args

    with pytest.raises(RuntimeError) as expected:
        BaseEstimator._get_param_names.__func__(Varargs)
    with pytest.raises(RuntimeError) as got:
        Varargs._get_param_names()
    assert str(got.value) == str(expected.value)


def test_not_fitted_is_sklearns_error_and_message():
    masker = MultiNiftiMapsMasker("maps.nii.gz")
    with pytest.raises(NotFittedError) as expected:
        sklearn_check_is_fitted(masker)
    for method in (
        masker.transform,
        masker.transform_single_imgs,
        masker.inverse_transform,
    ):
        with pytest.raises(NotFittedError) as got:
            method([[0.0]])
        assert str(got.value) == str(expected.value)
        assert isinstance(got.value, ValueError | AttributeError)
    with pytest.raises(NotFittedError, match="This MultiNiftiMapsMasker instance is not fitted"):
        sklearn_protocol.check_is_fitted(masker)


def test_pickle_state_clone_and_repr_are_sklearns(files):
    names = [f"region {k}" for k in range(6)]
    masker = NiftiMapsMasker(files["maps"], t_r=2.0, region_names=names).fit(files["run"])
    assert SklearnProtocol.__getstate__(masker) == BaseEstimator.__getstate__(masker)
    assert "_sklearn_version" not in SklearnProtocol.__getstate__(masker)
    copy = pickle.loads(pickle.dumps(masker))
    assert copy.get_params(deep=False).keys() == masker.get_params(deep=False).keys()
    assert copy.n_elements_ == masker.n_elements_
    restored = NiftiMapsMasker.__new__(NiftiMapsMasker)
    SklearnProtocol.__setstate__(restored, SklearnProtocol.__getstate__(masker))
    assert restored.get_params(deep=False) == masker.get_params(deep=False)
    cloned = clone(masker)
    assert not hasattr(cloned, "maps_img_")
    assert cloned.region_names is not masker.region_names  # deep-copied parameters
    assert cloned.region_names == names
    assert SklearnProtocol.__repr__(masker) == BaseEstimator.__repr__(masker)
    assert repr(masker).startswith("NiftiMapsMasker(maps_img=")
    html = SklearnProtocol._repr_html_.fget(masker)()
    numbered = re.compile(r"-id-[0-9]+")  # each diagram numbers its elements anew
    assert numbered.sub("-id-", html) == numbered.sub("-id-", masker._repr_html_())
    assert "nilearn.maskers.NiftiMapsMasker.html" in html  # our documentation link


def test_a_class_that_did_not_adopt_the_bases_says_so():
    class Orphan(SklearnProtocol):
        def __init__(self, a=1):
            self.a = a

    with pytest.raises(TypeError, match="Orphan did not adopt scikit-learn's bases"):
        repr(Orphan())
