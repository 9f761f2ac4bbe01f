"""Speed and memory scripts. They print tables; they are never run as tests."""
