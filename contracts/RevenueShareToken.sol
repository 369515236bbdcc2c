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
///         An agent (AGENT_ROLE, ERC-3643's recovery kit) can freeze a holder, move tokens
///         under a court order and recover a lost wallet with its unclaimed revenue.
contract RevenueShareToken is ERC20, AccessControl, Pausable, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;
    using SafeCast for uint256;
    using SafeCast for int256;

    bytes32 public constant OPERATOR_ROLE = keccak256("OPERATOR_ROLE");
    bytes32 public constant DISTRIBUTOR_ROLE = keccak256("DISTRIBUTOR_ROLE");
    bytes32 public constant AGENT_ROLE = keccak256("AGENT_ROLE");

    uint256 private constant MAGNITUDE = 2 ** 128;
    /// @notice Lifetime funding cap in stablecoin units (2^55 - 1, about 3.6e10 units of a
    ///         6-decimal coin): it keeps every correction in 184 bits and each account's state
    ///         (correction, claimed, status) in one storage slot.
    uint256 public constant MAX_TOTAL_FUNDED = type(uint56).max >> 1;

    uint8 private constant ACTIVE = 0;
    uint8 private constant FROZEN = 1;
    uint8 private constant LOST = 2;

    IERC20 public immutable stablecoin;
    IInvestorRegistry public immutable investorRegistry;
    bytes32 public immutable poolId;

    /// Per account: magnified correction, the total claimed and the status: one slot.
    struct Account {
        int184 correction;
        uint64 claimed;
        uint8 status;
    }

    /// Revenue per token unit, times 2^128 (at most MAX_TOTAL_FUNDED * 2^128 < 2^191).
    uint256 private _perShare;
    uint64 private _totalFunded;
    mapping(address holder => Account) private _accounts;
    /// Set while the agent moves tokens: pause, the sender's KYC and freeze do not apply.
    bool private transient _agentMove;

    event RevenueDistributed(uint256 amount, uint256 totalFunded, uint256 perShare);
    event Claimed(address indexed holder, uint256 amount);
    event HolderFrozen(address indexed holder);
    event HolderUnfrozen(address indexed holder);
    event ForcedTransfer(address indexed from, address indexed to, uint256 amount);
    event WalletRecovered(address indexed lost, address indexed replacement, uint256 balance, uint256 entitlement);

    error ZeroAddress();
    error LengthMismatch();
    error NoIssuance();
    error ZeroAmount();
    error InvestorNotAllowed(address account);
    error NothingToClaim(address holder);
    error FundingCapExceeded(uint256 totalFunded, uint256 cap);
    error AccountFrozen(address holder);
    error AccountLost(address holder);
    error NotFrozen(address holder);
    error SameAddress(address account);

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
        _grantRole(AGENT_ROLE, admin);
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
        if (account.status == FROZEN) revert AccountFrozen(msg.sender);
        if (account.status == LOST) revert AccountLost(msg.sender);
        amount = _accumulated(msg.sender, _perShare, account.correction) - account.claimed;
        if (amount == 0) revert NothingToClaim(msg.sender);
        // claimed + amount <= totalFunded <= MAX_TOTAL_FUNDED < 2^64: the cast is exact.
        _accounts[msg.sender] = Account(account.correction, account.claimed + uint64(amount), ACTIVE);
        stablecoin.safeTransfer(msg.sender, amount);
        emit Claimed(msg.sender, amount);
    }

    /// @notice Stablecoin the holder is entitled to and has not claimed (rounded down: dust
    ///         never over-pays). A frozen holder keeps accruing; it claims once unfrozen.
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

    // ----- recovery kit (AGENT_ROLE) -----

    /// @notice Stop a holder from transferring and claiming; its entitlement keeps accruing.
    function freeze(address holder) external onlyRole(AGENT_ROLE) {
        Account storage a = _accounts[holder];
        if (holder == address(0)) revert ZeroAddress();
        if (a.status == LOST) revert AccountLost(holder);
        if (a.status == FROZEN) revert AccountFrozen(holder);
        a.status = FROZEN;
        emit HolderFrozen(holder);
    }

    function unfreeze(address holder) external onlyRole(AGENT_ROLE) {
        Account storage a = _accounts[holder];
        if (a.status != FROZEN) revert NotFrozen(holder);
        a.status = ACTIVE;
        emit HolderUnfrozen(holder);
    }

    function isFrozen(address holder) external view returns (bool) {
        return _accounts[holder].status == FROZEN;
    }

    /// @notice True for a wallet replaced by `recoverWallet`: it can never hold tokens again.
    function isLost(address holder) external view returns (bool) {
        return _accounts[holder].status == LOST;
    }

    /// @notice Move tokens without the holder (a court order): from a frozen or no longer
    ///         allow-listed holder too, and while paused. The receiver must be allow-listed.
    ///         Revenue earned before the move stays with `from`, as on any transfer.
    function forcedTransfer(address from, address to, uint256 amount) external onlyRole(AGENT_ROLE) {
        if (from == to) revert SameAddress(from);
        _agentMove = true;
        _transfer(from, to, amount);
        _agentMove = false;
        emit ForcedTransfer(from, to, amount);
    }

    /// @notice Replace a lost wallet: its balance, its unclaimed entitlement (exactly) and
    ///         its frozen status move to the allow-listed `replacement`; `lost` is blocked for
    ///         good. Dust below one stablecoin unit stays in the contract.
    function recoverWallet(address lost, address replacement) external onlyRole(AGENT_ROLE) {
        if (lost == replacement) revert SameAddress(lost);
        if (lost == address(0) || replacement == address(0)) revert ZeroAddress();
        uint8 status = _accounts[lost].status;
        if (status == LOST) revert AccountLost(lost);
        if (_accounts[replacement].status == LOST) revert AccountLost(replacement);
        uint256 balance = balanceOf(lost);
        _agentMove = true;
        _transfer(lost, replacement, balance);
        _agentMove = false;
        Account storage old = _accounts[lost];
        // With a zero balance, accumulated(lost) = correction / 2^128: what was earned.
        uint256 entitlement = _accumulated(lost, _perShare, old.correction) - old.claimed;
        old.correction = (uint256(old.claimed) * MAGNITUDE).toInt256().toInt184();
        old.status = LOST;
        Account storage fresh = _accounts[replacement];
        fresh.correction = (int256(fresh.correction) + (entitlement * MAGNITUDE).toInt256()).toInt184();
        if (status == FROZEN) fresh.status = FROZEN;
        emit WalletRecovered(lost, replacement, balance, entitlement);
    }

    // ----- administration -----

    function pause() external onlyRole(OPERATOR_ROLE) {
        _pause();
    }

    function unpause() external onlyRole(OPERATOR_ROLE) {
        _unpause();
    }

    // ----- internals -----

    function _accumulated(address holder, uint256 perShare, int184 correction) private view returns (uint256) {
        return uint256(int256(perShare * balanceOf(holder)) + correction) / MAGNITUDE;
    }

    /// Every balance change (mint, burn, transfer) passes here: pause, KYC and freeze checks
    /// (the agent's moves skip those on the sender), then the corrections that keep
    /// entitlements earned before the change with their earner.
    function _update(address from, address to, uint256 value) internal override {
        Account storage a = _accounts[from];
        Account storage b = _accounts[to];
        if (!_agentMove) {
            _requireNotPaused();
            if (from != address(0)) {
                if (!investorRegistry.isAllowed(from)) revert InvestorNotAllowed(from);
                if (a.status != ACTIVE) revert AccountFrozen(from);
            }
        }
        if (to != address(0)) {
            if (!investorRegistry.isAllowed(to)) revert InvestorNotAllowed(to);
            if (b.status == LOST) revert AccountLost(to);
        }
        super._update(from, to, value);
        uint256 perShare = _perShare;
        if (perShare == 0 || value == 0) return;
        int256 delta = (perShare * value).toInt256();
        if (from != address(0)) {
            a.correction = (int256(a.correction) + delta).toInt184();
        }
        if (to != address(0)) {
            b.correction = (int256(b.correction) - delta).toInt184();
        }
    }
}
