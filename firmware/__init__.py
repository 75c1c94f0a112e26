"""Host side: compiler, driver, generated headers and the ``ilmpq`` command-line interface."""
