"""medverify: formal robustness verification of small medical-image classifiers."""

__version__ = "0.1.0"
