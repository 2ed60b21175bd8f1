from tests.conftest import real_mnist  # noqa: F401  (the fixture, shared with the tests)
