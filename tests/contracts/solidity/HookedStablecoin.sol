// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

interface ITokenReceiver {
    function onTokenReceived(address from, uint256 amount) external;
}

/// Test-only: a stablecoin that calls back every contract it pays (ERC-777/1363 style),
/// giving a hostile receiver the chance to re-enter whoever paid it.
contract HookedStablecoin is ERC20 {
    constructor() ERC20("Hooked HKD", "hHKD") {}

    function decimals() public pure override returns (uint8) {
        return 6;
    }

    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    function _update(address from, address to, uint256 value) internal override {
        super._update(from, to, value);
        if (from != address(0) && to.code.length > 0) {
            ITokenReceiver(to).onTokenReceived(from, value);
        }
    }
}
