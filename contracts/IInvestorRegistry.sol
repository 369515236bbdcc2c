// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// @notice What a revenue-share token needs from the KYC allow-list.
interface IInvestorRegistry {
    function isAllowed(address investor) external view returns (bool);
}
