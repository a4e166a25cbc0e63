"""QFaceModel / QFaceConfig under transformers' own common tests (`ModelTesterMixin`, `ConfigTester`).

The test files are those of the installed transformers release, fetched from its sdist at test time
(tests/transformers_common/sdist.py); the Q-Face tester and the list of skipped common tests, each with its reason,
are in tests/transformers_common/qface_tester.py. If the files cannot be fetched or imported (no network, say),
`test_transformers_common_tests_are_available` fails with the cause: this suite is never skipped.
"""

from __future__ import annotations

import unittest
import warnings

import pytest
import transformers

from modeling_qface import QFaceConfig, QFaceModel
from tests.transformers_common.qface_tester import (
    CONFIG_COMMON_KWARGS,
    EXPECTED_SELF_SKIPS,
    SKIPPED_COMMON_TESTS,
    QFaceModelTester,
)
from tests.transformers_common.sdist import CommonTestsUnavailable, cache_dir, load_common_test_modules

try:
    with warnings.catch_warnings():
        # transformers' CI registers its marks (flash_attn_test, torch_compile_test, ...) in its own conftest.
        warnings.simplefilter("ignore", pytest.PytestUnknownMarkWarning)
        _modeling_common, _configuration_common = load_common_test_modules(CONFIG_COMMON_KWARGS)
    _UNAVAILABLE = None
except CommonTestsUnavailable as error:
    _UNAVAILABLE = error


def test_transformers_common_tests_are_available():
    if _UNAVAILABLE is not None:
        pytest.fail(
            f"transformers {transformers.__version__}'s common model tests could not be loaded, so QFaceModel was not "
            f"checked against them (they come from the transformers sdist, cached in {cache_dir()}; the download "
            f"needs network access once per transformers version):\n{_UNAVAILABLE}",
            pytrace=False,
        )


def _is_parameterized(name: str, base: str) -> bool:
    """Whether `name` is one of `parameterized.expand`'s variants of `base` (`<base>_<index>_<parameters>`)."""
    return name.startswith(f"{base}_") and name[len(base) + 1 : len(base) + 2].isdigit()


def _skipped(reason: str):
    @unittest.skip(reason)
    def test(self):
        pass

    return test


if _UNAVAILABLE is None:

    class QFaceModelTest(_modeling_common.ModelTesterMixin, unittest.TestCase):
        """The common model tests. Overridden, as transformers' ViTMAE test does: `test_model_get_set_embeddings`
        (the input embedding is a patch embedding, not an `nn.Embedding`). Adjusted: the SDPA dispatch test."""

        all_model_classes = (QFaceModel,)
        # The patch embedding is a convolution, not a token embedding: nothing to resize (as ViTMAE).
        test_resize_embeddings = False
        # A sub-config (`backbone_config`) with its own sub-model (the ViTMAE encoder): the tests of per-sub-config
        # attention implementations (`attn_implementation={"": ..., "backbone_config": ...}`) apply.
        _is_composite = True

        def setUp(self):
            self.model_tester = QFaceModelTester(self)
            self.config_tester = _configuration_common.ConfigTester(
                self,
                config_class=QFaceConfig,
                has_text_modality=False,
                d_model=64,
                decoder_layers=3,
                common_properties=["backbone_config", "fusion_layers", "d_model", "decoder_layers", "tasks"],
            )

        def _prepare_for_class(self, inputs_dict, model_class, return_labels=False):
            inputs = super()._prepare_for_class(inputs_dict, model_class, return_labels=return_labels)
            if return_labels:
                pixel_values = inputs["pixel_values"]
                inputs.update(self.model_tester.prepare_labels(len(pixel_values), pixel_values.device))
            return inputs

        def skipTest(self, reason):
            # A common test skipping itself after looking at the model must be one of EXPECTED_SELF_SKIPS.
            name = self._testMethodName
            if not any(name == key or _is_parameterized(name, key) for key in EXPECTED_SELF_SKIPS):
                self.fail(
                    f"{name} skipped itself for QFaceModel ({reason}). If it really cannot apply to Q-Face, add it "
                    "with the reason to EXPECTED_SELF_SKIPS in tests/transformers_common/qface_tester.py; otherwise "
                    "fix the model."
                )
            super().skipTest(reason)

        def test_config(self):
            self.config_tester.run_common_tests()

        def test_model_get_set_embeddings(self):
            # ViTMAE's version of this test, made exact: the encoder's patch embedding (a convolution) is the input
            # embedding; Q-Face has no output embedding.
            config, _ = self.model_tester.prepare_config_and_inputs_for_common()
            for model_class in self.all_model_classes:
                model = model_class(config)
                self.assertIs(model.get_input_embeddings(), model.encoder.embeddings.patch_embeddings)
                replacement = type(model.get_input_embeddings())(config.backbone_config)
                model.set_input_embeddings(replacement)
                self.assertIs(model.get_input_embeddings(), replacement)
                self.assertIsNone(model.get_output_embeddings())

        def test_sdpa_can_dispatch_non_composite_models(self):
            # The composite variant of this test looks for a VLM's vision tower and language model and skips Q-Face;
            # this one's checks apply as they are (a string `attn_implementation` reaches every sub-config), so it
            # runs with the composite flag off for this test (unittest makes a new instance per test).
            self._is_composite = False
            super().test_sdpa_can_dispatch_non_composite_models()

    for _name, _reason in SKIPPED_COMMON_TESTS.items():
        if hasattr(QFaceModelTest, _name):
            setattr(QFaceModelTest, _name, _skipped(_reason))


def test_every_skipped_common_test_exists():
    """The skip lists name tests of this transformers release only (they are kept current on upgrades)."""
    if _UNAVAILABLE is not None:
        pytest.fail("transformers' common tests are unavailable (see test_transformers_common_tests_are_available)")
    names = [name for name in dir(_modeling_common.ModelTesterMixin) if name.startswith("test_")]
    unknown = [name for name in SKIPPED_COMMON_TESTS if name not in names]
    unknown += [k for k in EXPECTED_SELF_SKIPS if not any(n == k or _is_parameterized(n, k) for n in names)]
    version = transformers.__version__
    assert not unknown, f"skip lists in qface_tester.py name tests transformers {version} lacks: {unknown}"
