"""The loopback federation's reading of a SuperNode's log after its server restarted."""

from simulations.loopback import receiving, retrying

FAILED = "WARNING :   Connection attempt failed, retrying in 7.81 seconds\n"


def test_a_supernode_that_never_called_a_dead_server_is_not_retrying():
    assert not retrying("INFO :      Sent successfully\n")


def test_a_failed_call_is_retried_until_it_gets_through_or_the_server_says_its_run_ended():
    assert retrying("INFO :      Sending: train message (ID: 90be)\n" + FAILED)
    assert retrying(FAILED + "INFO :      Connection successful after 8.10 seconds and 5 tries.\n" + FAILED)
    assert not retrying(FAILED + "INFO :      Connection successful after 8.10 seconds and 5 tries.\n")
    ended = "INFO :      Run ID 55 is not in `RUNNING` status. Ignoring reply message 90be.\n"
    assert not retrying(FAILED + ended)  # answered at last, with PERMISSION_DENIED: no success line follows
    assert not retrying(FAILED + "WARNING :   Giving up reconnection after 30.00 seconds and 6 tries.\n")


def test_a_message_whose_content_has_not_arrived_is_still_being_received():
    header = "INFO :      [RUN 55, ROUND 2]\nINFO :      Receiving: train message (ID: 90be)\n"
    assert receiving(header)
    assert not receiving(header + "INFO :      Received successfully\n")
    assert not receiving(header + "ERROR :     Failed to receive message 90be: run ended\n")
    assert not receiving(header + "INFO :      Run ID 55 is not in `RUNNING` status. Ignoring message 90be.\n")
    assert not receiving("INFO :      Sent successfully\n")
