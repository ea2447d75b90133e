"""Constants shared by the tests of this package."""

REGION = "ap-northeast-2"
