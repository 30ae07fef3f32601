// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {TimelockController} from "@openzeppelin/contracts/governance/TimelockController.sol";
import {IERC1155Receiver} from "@openzeppelin/contracts/token/ERC1155/IERC1155Receiver.sol";

/// @title KeyregTimelock: the OpenZeppelin TimelockController, refusing what it could never spend.
/// @notice Deployed by `keyreg gov deploy --timelock-delay S` with the governor as its only
/// proposer and canceller, anyone as executor, and no admin (node/gov/contracts.py): after
/// deployment nobody but a passed proposal can schedule anything in it, and a keyreg proposal
/// carries no value. So ETH, ERC-721 and ERC-1155 tokens sent here could never leave: receive,
/// the token callbacks and a paid execute revert instead.
contract KeyregTimelock is TimelockController {
    /// Value sent to a timelock that can never spend it.
    error TimelockDisabledDeposit();

    constructor(uint256 minDelay, address[] memory proposers, address[] memory executors, address admin)
        TimelockController(minDelay, proposers, executors, admin)
    {}

    receive() external payable override {
        revert TimelockDisabledDeposit();
    }

    function onERC721Received(address, address, uint256, bytes memory) public pure override returns (bytes4) {
        revert TimelockDisabledDeposit();
    }

    function onERC1155Received(address, address, uint256, uint256, bytes memory)
        public
        pure
        override
        returns (bytes4)
    {
        revert TimelockDisabledDeposit();
    }

    function onERC1155BatchReceived(address, address, uint256[] memory, uint256[] memory, bytes memory)
        public
        pure
        override
        returns (bytes4)
    {
        revert TimelockDisabledDeposit();
    }

    function execute(address target, uint256 value, bytes calldata payload, bytes32 predecessor, bytes32 salt)
        public
        payable
        override
    {
        if (msg.value != 0) revert TimelockDisabledDeposit();
        super.execute(target, value, payload, predecessor, salt);
    }

    function executeBatch(
        address[] calldata targets,
        uint256[] calldata values,
        bytes[] calldata payloads,
        bytes32 predecessor,
        bytes32 salt
    ) public payable override {
        if (msg.value != 0) revert TimelockDisabledDeposit();
        super.executeBatch(targets, values, payloads, predecessor, salt);
    }

    /// This timelock takes no tokens, so it does not claim to be an ERC-1155 receiver.
    function supportsInterface(bytes4 interfaceId) public view override returns (bool) {
        return interfaceId != type(IERC1155Receiver).interfaceId && super.supportsInterface(interfaceId);
    }
}
