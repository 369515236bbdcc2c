"""Chain access: compiling, deploying and calling the gridshare contracts through web3.py.

The functions other components use are re-exported here.
"""

from gridshare.core.chain.accounts import Accounts, ChainAccount, load_accounts
from gridshare.core.chain.client import ChainClient, connect
from gridshare.core.chain.deploy import deploy
from gridshare.core.chain.deployment import DeploymentRecord, PoolRecord, read_deployment
from gridshare.core.chain.pools import create_pool, register_devices

__all__ = [
    "Accounts",
    "ChainAccount",
    "ChainClient",
    "DeploymentRecord",
    "PoolRecord",
    "connect",
    "create_pool",
    "deploy",
    "load_accounts",
    "read_deployment",
    "register_devices",
]
