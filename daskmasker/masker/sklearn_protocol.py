"""scikit-learn's estimator protocol without importing scikit-learn until someone else does.

``import sklearn.base`` costs several times what a one-shot job (a CLI call, a SLURM array task) may
spend on ``import daskmasker`` and ``NiftiMapsMasker(...)`` (``sklearn.utils`` imports scipy.stats,
scipy.optimize, joblib and pandas; ``benchmarks/results/2026-12-07-startup.md``). Fitting and
transforming need only ``get_params`` and the fitted check, so the maskers start on
:class:`SklearnProtocol`, which implements that part of the protocol with scikit-learn's exact
semantics (its code, BSD-3-Clause, ``sklearn/base.py`` 1.9), and become ordinary scikit-learn
estimators as soon as ``sklearn.base`` is imported by anyone:

* :func:`adopt_sklearn_bases` replaces the class's bases by ``(TransformerMixin, BaseEstimator)``
  at once when ``sklearn.base`` is already imported, else from a one-shot import hook that runs
  right after ``sklearn.base`` has been executed.  The class is then exactly what it would be had
  it inherited from them when defined (same MRO, same ``__init_subclass__`` effects: scikit-learn's
  ``set_{method}_request`` descriptors and ``set_output`` keys), for it and its subclasses;
* so ``isinstance(masker, sklearn.base.BaseEstimator)`` holds for any code that can name
  ``BaseEstimator``, and sklearn's, nilearn's and the user's tools see the class they always saw.

What scikit-learn alone provides (``repr``, the HTML diagram, ``__sklearn_tags__``, metadata
routing, ``NotFittedError``) imports it when asked: the caller pays once, when it uses it.
"""

from __future__ import annotations

import importlib.util
import inspect
import sys
from collections import defaultdict
from typing import Any

# scikit-learn's exact message (``sklearn.utils.validation.check_is_fitted``)
NOT_FITTED = (
    "This %(name)s instance is not fitted yet. Call 'fit' with appropriate arguments before "
    "using this estimator."
)


class SklearnProtocol:
    """The part of ``sklearn.base.BaseEstimator`` a masker uses before scikit-learn is imported.

    A class deriving from it calls :func:`adopt_sklearn_bases` right after its definition; this
    base then disappears from its MRO as soon as ``sklearn.base`` is imported.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # scikit-learn's __init_subclass__ hooks take keywords (auto_wrap_output_keys): kept so
        # that adopt_sklearn_bases replays them, and their effect on set_output emulated now
        super().__init_subclass__()
        setattr(cls, "_sklearn_init_subclass_kwargs", kwargs)  # noqa: B010 (not declared)
        if kwargs.get("auto_wrap_output_keys", ("transform",)) is None:
            setattr(cls, "_sklearn_auto_wrap_output_keys", set())  # noqa: B010

    @classmethod
    def _get_param_names(cls) -> list[str]:
        """Get parameter names for the estimator (``__init__``'s, sorted)."""
        init = cls.__init__
        if init is object.__init__:
            return []
        init_signature = inspect.signature(init)
        parameters = [
            p
            for p in init_signature.parameters.values()
            if p.name != "self" and p.kind != p.VAR_KEYWORD
        ]
        for p in parameters:
            if p.kind == p.VAR_POSITIONAL:
                raise RuntimeError(
                    "scikit-learn estimators should always "
                    "specify their parameters in the signature"
                    " of their __init__ (no varargs)."
                    f" {cls} with constructor {init_signature} doesn't "
                    " follow this convention."
                )
        return sorted([p.name for p in parameters])

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Get parameters for this estimator.

        Parameters
        ----------
        deep : bool, default=True
            If True, will return the parameters for this estimator and
            contained subobjects that are estimators.

        Returns
        -------
        params : dict
            Parameter names mapped to their values.
        """
        out: dict[str, Any] = {}
        for key in self._get_param_names():
            value = getattr(self, key)
            if deep and hasattr(value, "get_params") and not isinstance(value, type):
                deep_items = value.get_params().items()
                out.update((key + "__" + k, val) for k, val in deep_items)
            out[key] = value
        return out

    def set_params(self, **params: Any) -> SklearnProtocol:
        """Set the parameters of this estimator (``<component>__<parameter>`` for nested ones).

        Parameters
        ----------
        **params : dict
            Estimator parameters.

        Returns
        -------
        self : estimator instance
            Estimator instance.
        """
        if not params:
            return self
        valid_params = self.get_params(deep=True)

        nested_params: defaultdict[str, dict[str, Any]] = defaultdict(dict)
        for key, value in params.items():
            key, delim, sub_key = key.partition("__")
            if key not in valid_params:
                local_valid_params = self._get_param_names()
                raise ValueError(
                    f"Invalid parameter {key!r} for estimator {self}. "
                    f"Valid parameters are: {local_valid_params!r}."
                )
            if delim:
                nested_params[key][sub_key] = value
            else:
                setattr(self, key, value)
                valid_params[key] = value

        for key, sub_params in nested_params.items():
            valid_params[key].set_params(**sub_params)
        return self

    def __sklearn_clone__(self) -> Any:
        # only sklearn.base.clone calls it: sklearn is imported, this base is gone by then
        return _as_sklearn_estimator(self).__sklearn_clone__()

    def __repr__(self, N_CHAR_MAX: int = 700) -> str:
        return _as_sklearn_estimator(self).__repr__(N_CHAR_MAX)

    @property
    def _repr_html_(self) -> Any:
        """Jupyter's HTML diagram, scikit-learn's (which imports it on first display)."""
        return _as_sklearn_estimator(self)._repr_html_

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, str]:
        return _as_sklearn_estimator(self)._repr_mimebundle_(**kwargs)

    def __getstate__(self) -> dict[str, Any]:
        # BaseEstimator's for a class outside the sklearn package: the instance dict, no
        # _sklearn_version (so pickles load the same before and after sklearn is imported)
        if getattr(self, "__slots__", None):
            raise TypeError(
                "You cannot use `__slots__` in objects inheriting from "
                "`sklearn.base.BaseEstimator`."
            )
        return self.__dict__.copy()

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)


def check_is_fitted(estimator: SklearnProtocol) -> None:
    """``sklearn.utils.validation.check_is_fitted(estimator)`` for our maskers, which always
    require fitting and say whether they are fitted (``__sklearn_is_fitted__``).

    Raises
    ------
    sklearn.exceptions.NotFittedError
        With scikit-learn's message; scikit-learn is imported only to raise it.
    """
    if not estimator.__sklearn_is_fitted__():  # type: ignore[attr-defined]  # the maskers define it
        from sklearn.exceptions import NotFittedError

        raise NotFittedError(NOT_FITTED % {"name": type(estimator).__name__})


def load_sklearn() -> None:
    """Import ``sklearn.base``, which turns every adopting class into a scikit-learn estimator."""
    import sklearn.base  # noqa: F401 (the import hook or adopt_sklearn_bases rebases)


def _as_sklearn_estimator(estimator: SklearnProtocol) -> Any:
    """``estimator``, once its class has its scikit-learn bases (imported here if need be)."""
    load_sklearn()
    from sklearn.base import BaseEstimator

    if not isinstance(estimator, BaseEstimator):  # a class that never called adopt_sklearn_bases
        raise TypeError(f"{type(estimator).__qualname__} did not adopt scikit-learn's bases")
    return estimator


_ADOPTING: list[type] = []


def adopt_sklearn_bases(cls: type) -> type:
    """Give ``cls`` the bases ``(TransformerMixin, BaseEstimator)`` once ``sklearn.base`` is
    imported: now if it is, else right after its import (a one-shot ``sys.meta_path`` hook).

    Returns ``cls`` (usable as a class decorator).
    """
    if "sklearn.base" in sys.modules:
        _rebase(cls)
        return cls
    _ADOPTING.append(cls)
    if not any(isinstance(finder, _SklearnBaseHook) for finder in sys.meta_path):
        sys.meta_path.insert(0, _SklearnBaseHook())
    return cls


def _rebase(cls: type) -> None:
    """Replace :class:`SklearnProtocol` by scikit-learn's bases in ``cls``, then replay what
    scikit-learn's ``__init_subclass__`` hooks do for ``cls`` and each of its subclasses
    (parents first), with the keywords each class was defined with."""
    from sklearn.base import BaseEstimator, TransformerMixin

    if issubclass(cls, BaseEstimator):
        return
    cls.__bases__ = (TransformerMixin, BaseEstimator)
    pending, seen = [cls], set()
    while pending:
        klass = pending.pop(0)
        if klass in seen:  # a subclass of two of them: once
            continue
        seen.add(klass)
        kwargs = klass.__dict__.get("_sklearn_init_subclass_kwargs")
        if kwargs is not None:
            delattr(klass, "_sklearn_init_subclass_kwargs")
        super(klass, klass).__init_subclass__(**(kwargs or {}))  # type: ignore[arg-type]
        pending.extend(klass.__subclasses__())


class _SklearnBaseHook:
    """A ``sys.meta_path`` finder that rebases the adopting classes right after ``sklearn.base``
    has been executed, then removes itself (what ``wrapt.register_post_import_hook`` does;
    importing wrapt would cost a sizeable part of the startup budget)."""

    _finding = False

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname != "sklearn.base" or self._finding:
            return None
        self._finding = True
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            self._finding = False
        if spec is None or spec.loader is None:
            return None
        spec.loader = _RebasingLoader(spec.loader, self)  # type: ignore[assignment]  # duck-typed
        return spec


class _RebasingLoader:
    """The loader of ``sklearn.base``, followed by the rebasing of the adopting classes."""

    def __init__(self, loader: Any, hook: _SklearnBaseHook):
        self._loader = loader
        self._hook = hook

    def create_module(self, spec: Any) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        module.__loader__ = module.__spec__.loader = self._loader
        self._loader.exec_module(module)
        if self._hook in sys.meta_path:
            sys.meta_path.remove(self._hook)
        while _ADOPTING:
            _rebase(_ADOPTING.pop(0))
