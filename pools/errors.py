from core.errors import ApplicationError


class InvalidStake(ApplicationError):
    code = "invalid_stake"
    status_code = 400
    default_message = "The stake is not valid."


class BrokerUnavailable(ApplicationError):
    code = "broker_unavailable"
    status_code = 503
    default_message = "Kafka did not take the message; try again."
