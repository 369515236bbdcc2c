// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";

/// @title DeviceRegistry
/// @notice Device id (keccak256 of the UTF-8 id) -> signing address, pool (keccak256 of the
///         UTF-8 pool name) and active flag.
contract DeviceRegistry is AccessControl {
    bytes32 public constant OPERATOR_ROLE = keccak256("OPERATOR_ROLE");

    struct Device {
        address signer;
        bool active;
        bytes32 poolId;
    }

    mapping(bytes32 deviceId => Device) private _devices;
    uint256 public deviceCount;

    event DeviceRegistered(bytes32 indexed deviceId, address indexed signer, bytes32 indexed poolId);
    event DeviceKeyRotated(bytes32 indexed deviceId, address indexed oldSigner, address indexed newSigner);
    event DeviceDeactivated(bytes32 indexed deviceId);

    error ZeroAddress();
    error ZeroId();
    error DeviceAlreadyRegistered(bytes32 deviceId);
    error DeviceUnknown(bytes32 deviceId);
    error DeviceInactive(bytes32 deviceId);
    error LengthMismatch();

    constructor(address admin, address operator) {
        if (admin == address(0) || operator == address(0)) revert ZeroAddress();
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(OPERATOR_ROLE, operator);
    }

    function register(bytes32 deviceId, address signer, bytes32 poolId) external onlyRole(OPERATOR_ROLE) {
        _register(deviceId, signer, poolId);
        ++deviceCount;
    }

    /// @notice Register many devices in one transaction (provisioning of large pools).
    function registerBatch(bytes32[] calldata deviceIds, address[] calldata signers, bytes32[] calldata poolIds)
        external
        onlyRole(OPERATOR_ROLE)
    {
        if (deviceIds.length != signers.length || deviceIds.length != poolIds.length) revert LengthMismatch();
        for (uint256 i = 0; i < deviceIds.length; ++i) {
            _register(deviceIds[i], signers[i], poolIds[i]);
        }
        deviceCount += deviceIds.length;
    }

    function rotateKey(bytes32 deviceId, address newSigner) external onlyRole(OPERATOR_ROLE) {
        if (newSigner == address(0)) revert ZeroAddress();
        Device storage d = _devices[deviceId];
        if (d.signer == address(0)) revert DeviceUnknown(deviceId);
        if (!d.active) revert DeviceInactive(deviceId);
        address old = d.signer;
        d.signer = newSigner;
        emit DeviceKeyRotated(deviceId, old, newSigner);
    }

    function deactivate(bytes32 deviceId) external onlyRole(OPERATOR_ROLE) {
        Device storage d = _devices[deviceId];
        if (d.signer == address(0)) revert DeviceUnknown(deviceId);
        if (!d.active) revert DeviceInactive(deviceId);
        d.active = false;
        emit DeviceDeactivated(deviceId);
    }

    /// @notice (signer, poolId, active); signer is zero for an unknown device.
    function device(bytes32 deviceId) external view returns (address signer, bytes32 poolId, bool active) {
        Device storage d = _devices[deviceId];
        return (d.signer, d.poolId, d.active);
    }

    function isRegistered(bytes32 deviceId) external view returns (bool) {
        return _devices[deviceId].signer != address(0);
    }

    function _register(bytes32 deviceId, address signer, bytes32 poolId) private {
        if (deviceId == bytes32(0) || poolId == bytes32(0)) revert ZeroId();
        if (signer == address(0)) revert ZeroAddress();
        if (_devices[deviceId].signer != address(0)) revert DeviceAlreadyRegistered(deviceId);
        _devices[deviceId] = Device({signer: signer, active: true, poolId: poolId});
        emit DeviceRegistered(deviceId, signer, poolId);
    }
}
