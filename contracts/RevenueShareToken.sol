// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {IInvestorRegistry} from "./IInvestorRegistry.sol";

/// @title RevenueShareToken
/// @notice One per pool. An ERC-20 issued once, at creation, to allow-listed investors. The
///         stablecoin revenue funded for the pool is distributed pro rata through a per-share
///         accumulator (scale 2^128) with per-account corrections applied in `_update`, so
///         mint, burn and transfer all keep every holder's entitlement exact (ERC-1726/2222).
///         Holders pull their part with `claim()`. Transfers are pausable; claims are not.
contract RevenueShareToken is ERC20, AccessControl, Pausable, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;
    using SafeCast for uint256;
    using SafeCast for int256;

    bytes32 public constant OPERATOR_ROLE = keccak256("OPERATOR_ROLE");
    bytes32 public constant DISTRIBUTOR_ROLE = keccak256("DISTRIBUTOR_ROLE");

    uint256 private constant MAGNITUDE = 2 ** 128;
    /// @notice Lifetime funding cap in stablecoin units (2^63 - 1, about 9.2e12 HKD): it keeps
    ///         the accumulator in 192 bits and each account's state in one storage slot.
    uint256 public constant MAX_TOTAL_FUNDED = type(uint64).max >> 1;

    IERC20 public immutable stablecoin;
    IInvestorRegistry public immutable investorRegistry;
    bytes32 public immutable poolId;

    /// Per account: magnified correction and the total claimed: one slot.
    struct Account {
        int192 correction;
        uint64 claimed;
    }

    /// Revenue per token unit, times 2^128 (at most MAX_TOTAL_FUNDED * 2^128 < 2^191).
    uint256 private _perShare;
    uint64 private _totalFunded;
    mapping(address holder => Account) private _accounts;

    event RevenueDistributed(uint256 amount, uint256 totalFunded, uint256 perShare);
    event Claimed(address indexed holder, uint256 amount);

    error ZeroAddress();
    error LengthMismatch();
    error NoIssuance();
    error ZeroAmount();
    error InvestorNotAllowed(address account);
    error NothingToClaim(address holder);
    error FundingCapExceeded(uint256 totalFunded, uint256 cap);

    constructor(
        string memory name_,
        string memory symbol_,
        bytes32 poolId_,
        IERC20 stablecoin_,
        IInvestorRegistry investorRegistry_,
        address admin,
        address operator,
        address distributor,
        address[] memory holders,
        uint256[] memory amounts
    ) ERC20(name_, symbol_) {
        if (
            address(stablecoin_) == address(0) || address(investorRegistry_) == address(0)
                || admin == address(0) || operator == address(0) || distributor == address(0)
        ) revert ZeroAddress();
        if (holders.length != amounts.length) revert LengthMismatch();
        if (holders.length == 0) revert NoIssuance();
        stablecoin = stablecoin_;
        investorRegistry = investorRegistry_;
        poolId = poolId_;
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(OPERATOR_ROLE, operator);
        _grantRole(DISTRIBUTOR_ROLE, distributor);
        for (uint256 i = 0; i < holders.length; ++i) {
            if (amounts[i] == 0) revert ZeroAmount();
            _mint(holders[i], amounts[i]);
        }
    }

    // ----- revenue -----

    /// @notice Distribute `amount` of stablecoin, already transferred to this contract, to the
    ///         current holders pro rata. Called by the attestation registry's `fund`, which
    ///         moves the stablecoin here in the same transaction.
    function distribute(uint256 amount) external onlyRole(DISTRIBUTOR_ROLE) {
        if (amount == 0) revert ZeroAmount();
        uint256 funded = uint256(_totalFunded) + amount;
        if (funded > MAX_TOTAL_FUNDED) revert FundingCapExceeded(funded, MAX_TOTAL_FUNDED);
        uint256 perShare = _perShare + (amount * MAGNITUDE) / totalSupply();
        _perShare = perShare;
        _totalFunded = uint64(funded);
        emit RevenueDistributed(amount, funded, perShare);
    }

    /// @notice Pay the caller everything it is owed. Works while transfers are paused.
    function claim() external nonReentrant returns (uint256 amount) {
        Account memory account = _accounts[msg.sender];
        amount = _accumulated(msg.sender, _perShare, account.correction) - account.claimed;
        if (amount == 0) revert NothingToClaim(msg.sender);
        // claimed + amount <= totalFunded <= MAX_TOTAL_FUNDED < 2^64: the cast is exact.
        _accounts[msg.sender] = Account(account.correction, account.claimed + uint64(amount));
        stablecoin.safeTransfer(msg.sender, amount);
        emit Claimed(msg.sender, amount);
    }

    /// @notice Stablecoin the holder can claim now (rounded down: dust never over-pays).
    function claimable(address holder) external view returns (uint256) {
        Account memory account = _accounts[holder];
        return _accumulated(holder, _perShare, account.correction) - account.claimed;
    }

    function claimed(address holder) external view returns (uint256) {
        return _accounts[holder].claimed;
    }

    function totalFunded() external view returns (uint256) {
        return _totalFunded;
    }

    /// @notice The accumulator: revenue per token unit, times 2^128.
    function revenuePerShare() external view returns (uint256) {
        return _perShare;
    }

    // ----- administration -----

    function pause() external onlyRole(OPERATOR_ROLE) {
        _pause();
    }

    function unpause() external onlyRole(OPERATOR_ROLE) {
        _unpause();
    }

    // ----- internals -----

    function _accumulated(address holder, uint256 perShare, int192 correction) private view returns (uint256) {
        return uint256(int256(perShare * balanceOf(holder)) + correction) / MAGNITUDE;
    }

    /// Every balance change (mint, burn, transfer) passes here: pause and KYC checks, then
    /// the corrections that keep entitlements earned before the change with their earner.
    function _update(address from, address to, uint256 value) internal override whenNotPaused {
        if (from != address(0) && !investorRegistry.isAllowed(from)) revert InvestorNotAllowed(from);
        if (to != address(0) && !investorRegistry.isAllowed(to)) revert InvestorNotAllowed(to);
        super._update(from, to, value);
        uint256 perShare = _perShare;
        if (perShare == 0 || value == 0) return;
        int256 delta = (perShare * value).toInt256();
        if (from != address(0)) {
            Account storage a = _accounts[from];
            a.correction = (int256(a.correction) + delta).toInt192();
        }
        if (to != address(0)) {
            Account storage b = _accounts[to];
            b.correction = (int256(b.correction) - delta).toInt192();
        }
    }
}
