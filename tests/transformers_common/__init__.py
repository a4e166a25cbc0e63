"""Running transformers' own common model tests (`ModelTesterMixin`, `ConfigTester`) against Q-Face.

`sdist.py` fetches the test files of the installed transformers release at test time (they are not copied into
this repository); `qface_tester.py` holds the Q-Face model tester and the list of common tests skipped, with reasons.
`tests/test_transformers_common.py` runs them.
"""
