// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {IInvestorRegistry} from "./IInvestorRegistry.sol";

/// @title InvestorRegistry
/// @notice The KYC allow-list (ERC-3643 in spirit): a KYC agent admits investors until an
///         expiry; revenue-share tokens consult `isAllowed` on every transfer, mint and burn.
contract InvestorRegistry is AccessControl, IInvestorRegistry {
    bytes32 public constant KYC_AGENT_ROLE = keccak256("KYC_AGENT_ROLE");

    /// @notice Unix time until which an investor is allowed (0: never admitted or removed).
    mapping(address investor => uint64 expiry) public expiryOf;

    event InvestorAdmitted(address indexed investor, uint64 expiry);
    event InvestorRemoved(address indexed investor);

    error ZeroAddress();
    error ExpiryInPast(uint64 expiry, uint256 nowTs);
    error NotAdmitted(address investor);

    constructor(address admin, address kycAgent) {
        if (admin == address(0) || kycAgent == address(0)) revert ZeroAddress();
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(KYC_AGENT_ROLE, kycAgent);
    }

    /// @notice Admit (or re-admit with a new expiry) an investor.
    function admit(address investor, uint64 expiry) external onlyRole(KYC_AGENT_ROLE) {
        if (investor == address(0)) revert ZeroAddress();
        if (expiry <= block.timestamp) revert ExpiryInPast(expiry, block.timestamp);
        expiryOf[investor] = expiry;
        emit InvestorAdmitted(investor, expiry);
    }

    /// @notice Remove an investor from the allow-list at once.
    function remove(address investor) external onlyRole(KYC_AGENT_ROLE) {
        if (expiryOf[investor] == 0) revert NotAdmitted(investor);
        delete expiryOf[investor];
        emit InvestorRemoved(investor);
    }

    /// @notice True while the investor's admission has not expired.
    function isAllowed(address investor) external view returns (bool) {
        return expiryOf[investor] > block.timestamp;
    }
}
