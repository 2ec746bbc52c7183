"""The texts FCC answers a request with: the InfoMessage of each status, KCM's own texts for
the errors of storing an item, and the warnings of Verify. No side effects.

From mbed-cloud-client 4.10.0 (fcc_get_fcc_error_string, fcc_output_info_handler.c).
"""

from __future__ import annotations

from pep_agent.sim.bundle import GENERAL_ERROR, BundleError, FccStatus

# InfoMessage prefixes per status (fcc_get_fcc_error_string); the others are GENERAL_ERROR.
STATUS_TEXT = {
    FccStatus.CA_ERROR: "CA error:",
    FccStatus.ROT_ERROR: "Root of trust error:",
    FccStatus.STORE_ERROR: "Internal storage error:",
    FccStatus.KCM_CRYPTO_ERROR: "KCM crypto error:",
    FccStatus.INVALID_CERTIFICATE: "Certificate invalid:",
    FccStatus.INVALID_LWM2M_CN_ATTR: "Certificate CN attribute invalid:",
    FccStatus.ENTROPY_ERROR: "Entropy error:",
    FccStatus.FACTORY_DISABLED_ERROR: "Factory disabled error:",
    FccStatus.ITEM_NOT_EXIST: "Item does not exist:",
    FccStatus.WRONG_ITEM_DATA_SIZE: "Item size is wrong:",
    FccStatus.EMPTY_ITEM: "Item empty:",
    FccStatus.URI_WRONG_FORMAT: "URI format incorrect:",
    FccStatus.FIRST_TO_CLAIM_NOT_ALLOWED: "first to claim not allowed:",
    FccStatus.BOOTSTRAP_MODE_ERROR: "Bootstrap mode value incorrect:",
    FccStatus.UTC_OFFSET_WRONG_FORMAT: "UTC offset incorrect:",
    FccStatus.INVALID_CA_CERT_SIGNATURE: "Validation of CA certificate failed:",
    FccStatus.EXPIRED_CERTIFICATE: "Certificate expired:",
    FccStatus.CERTIFICATE_PUBLIC_KEY_CORRELATION_ERROR: "Certificate public key validation failed:",
    # The real text: its build stringizes the macro's name, not its value.
    FccStatus.TOO_MANY_CSR_REQUESTS:
        "Too many CSR requests. Maximum CSR requests supported is CSR_MAX_NUMBER_OF_CSRS",
}
# KCM's own texts for the errors of storing an item (fcc_output_info_handler.c).
ALREADY_EXISTS = "Data already exists:"
DATA_EMPTY = "Item data empty:"
KEY_INVALID = "Public key format invalid:"
KEY_ALGORITHM_UNKNOWN = "Public key algorithm unknown:"
CURVE_UNSUPPORTED = "Curve unsupported:"
CERT_INVALID = "Certificate parse failed:"
CHAIN_INVALID = "Chain validation error:"
SELF_CHECK = "Self-generated certificate validation failed:"
# Warnings.
NOT_SET = "Item not set:"
REDUNDANT = "Item redundant:"
SELF_SIGNED = "Certificate is self signed:"
NO_CLOCK = "Certificate validity cannot be checked:"
UNDER_TEN_YEARS = "Certificate validity is less than 10 years:"
CA_ID_UNSET = "CA identifier wasn't set properly:"
BOOTSTRAP_OFF = "Bootstrap mode not activated:"


def error(status: FccStatus, name: str = "", warnings: list[str] | None = None) -> BundleError:
    """The error FCC answers with status, naming the item (its InfoMessage)."""
    return BundleError(status, STATUS_TEXT.get(status, GENERAL_ERROR) + name, warnings)


def kcm_error(status: FccStatus, text: str, name: str) -> BundleError:
    """An error of storing an item: KCM's own text (not the status's), naming the item."""
    return BundleError(status, text + name)
