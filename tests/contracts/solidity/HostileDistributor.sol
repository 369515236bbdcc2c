// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

interface IFundable {
    function fund(bytes32 poolId, uint256 amount) external;
}

/// Test-only: a pool "token" that re-enters the registry's `fund` from `distribute`.
contract HostileDistributor {
    address public immutable stablecoin;
    IFundable public immutable registry;
    bytes32 public immutable poolId;
    uint256 public distributed;
    bool public reentrySucceeded;
    bytes public reentryError;

    constructor(address stablecoin_, IFundable registry_, bytes32 poolId_) {
        stablecoin = stablecoin_;
        registry = registry_;
        poolId = poolId_;
    }

    function distribute(uint256 amount) external {
        distributed += amount;
        try registry.fund(poolId, amount) {
            reentrySucceeded = true;
        } catch (bytes memory reason) {
            reentryError = reason;
        }
    }
}
