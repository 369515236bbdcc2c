// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

interface IClaimable {
    function claim() external returns (uint256);
}

/// Test-only: a token holder that re-enters `claim()` when the stablecoin pays it.
contract ClaimAttacker {
    IClaimable public immutable token;
    uint256 public reentries;
    bool public reentrySucceeded;
    bytes public reentryError;

    constructor(IClaimable token_) {
        token = token_;
    }

    function attack() external {
        token.claim();
    }

    function onTokenReceived(address, uint256) external {
        if (reentries > 0) return;
        ++reentries;
        try token.claim() {
            reentrySucceeded = true;
        } catch (bytes memory reason) {
            reentryError = reason;
        }
    }
}
